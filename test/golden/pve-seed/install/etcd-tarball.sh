#!/bin/sh
# Install etcd (tarball) on the etcd CTs: the seed's recipe, rendered by pgha.
set -eu

# the etcd user
useradd --system --home-dir /var/lib/etcd --shell /sbin/nologin etcd || case $? in 9) ;; *) exit 1 ;; esac

# a work directory
mkdir -p /tmp/pgha-etcd-v3.5.13-linux-amd64

# download etcd 3.5.13
curl -fsSL -o /tmp/pgha-etcd-v3.5.13-linux-amd64/etcd-v3.5.13-linux-amd64.tar.gz https://github.com/etcd-io/etcd/releases/download/v3.5.13/etcd-v3.5.13-linux-amd64.tar.gz

# download its checksums
curl -fsSL -o /tmp/pgha-etcd-v3.5.13-linux-amd64/SHA256SUMS https://github.com/etcd-io/etcd/releases/download/v3.5.13/SHA256SUMS

# verify the download
sh -c 'cd "$1" && sha256sum --check --ignore-missing SHA256SUMS' verify /tmp/pgha-etcd-v3.5.13-linux-amd64

# unpack
tar -xzf /tmp/pgha-etcd-v3.5.13-linux-amd64/etcd-v3.5.13-linux-amd64.tar.gz -C /tmp/pgha-etcd-v3.5.13-linux-amd64

# install etcd
install -m 0755 /tmp/pgha-etcd-v3.5.13-linux-amd64/etcd-v3.5.13-linux-amd64/etcd /usr/local/bin/etcd

# install etcdctl
install -m 0755 /tmp/pgha-etcd-v3.5.13-linux-amd64/etcd-v3.5.13-linux-amd64/etcdctl /usr/local/bin/etcdctl

# install etcdutl
install -m 0755 /tmp/pgha-etcd-v3.5.13-linux-amd64/etcd-v3.5.13-linux-amd64/etcdutl /usr/local/bin/etcdutl

# the data directory
install -d -m 0700 -o etcd -g etcd /var/lib/etcd

# the configuration directory
install -d -m 0755 /etc/etcd

# clean up
rm -rf /tmp/pgha-etcd-v3.5.13-linux-amd64
