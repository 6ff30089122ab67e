# skm/root-keyd: the root key tier: holds the root key, sealed at rest.
# FROM scratch: one static binary, its config, nothing else (no shell).
# Build with deploy/build-images, which stages the context (see deploy/README.md):
#   rootfs/usr/local/bin/root-keyd, rootfs/etc/skm/root-keyd.toml, rootfs/etc/nsswitch.conf,
#   state/ (empty: becomes /var/lib/skm, owned by the service user, for the volume).
FROM scratch
COPY rootfs/ /
COPY --chown=10001:10001 state/ /var/lib/skm/
USER 10001:10001
EXPOSE 7702
HEALTHCHECK --interval=5s --timeout=8s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/root-keyd", "health"]
ENTRYPOINT ["/usr/local/bin/root-keyd"]
