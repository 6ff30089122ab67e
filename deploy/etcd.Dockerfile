# skm/etcd: a member of docker-compose.ha.yml's etcd cluster.
# FROM scratch: Debian's etcd and etcdctl, the dynamic loader and the C
# library they link, nothing else (no shell). Build with deploy/build-images:
#   rootfs/usr/local/bin/{etcd,etcdctl}, rootfs/lib*/... (from ldd),
#   state/ (empty: becomes /var/lib/etcd, owned by the service user, for the volume).
# Its volume holds the member's certificate (written by skm-compose-init)
# and its data directory; the flags are in the compose file's environment.
FROM scratch
COPY rootfs/ /
COPY --chown=10001:10001 state/ /var/lib/etcd/
USER 10001:10001
EXPOSE 2379 2380
ENTRYPOINT ["/usr/local/bin/etcd"]
