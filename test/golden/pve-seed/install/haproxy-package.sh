#!/bin/sh
# Install haproxy (package) on the haproxy CTs: the seed's recipe, rendered by pgha.
set -eu

# install HAProxy
dnf install -y haproxy
