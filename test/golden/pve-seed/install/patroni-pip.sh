#!/bin/sh
# Install patroni (pip) on the postgres CTs: the seed's recipe, rendered by pgha.
set -eu

# Patroni's Python
dnf install -y python3 python3-pip

# install Patroni 3.3.0
pip3 install 'patroni[etcd3]==3.3.0' psycopg2-binary

# the Patroni configuration directory
install -d -m 0750 -o postgres -g postgres /etc/patroni
