#!/bin/sh
# Install postgresql (pgdg) on the postgres CTs: the seed's recipe, rendered by pgha.
set -eu

# add the PGDG repository
dnf install -y https://download.postgresql.org/pub/repos/yum/reporpms/EL-9-x86_64/pgdg-redhat-repo-latest.noarch.rpm

# disable the distribution's postgresql module
dnf -qy module disable postgresql

# install PostgreSQL 18.1
dnf install -y postgresql18-server-18.1 postgresql18-contrib-18.1

# Patroni runs PostgreSQL: disable the packaged service
systemctl disable --now postgresql-18

# the unix socket directory
install -d -m 2775 -o postgres -g postgres /var/run/postgresql
