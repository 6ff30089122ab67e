# skm/system-keyd: the system key tier: holds the system keys, wrapped by the root key only.
# FROM scratch: one static binary, its config, nothing else (no shell).
# Build with deploy/build-images, which stages the context (see deploy/README.md):
#   rootfs/usr/local/bin/system-keyd, rootfs/etc/skm/system-keyd.toml, rootfs/etc/nsswitch.conf,
#   state/ (empty: becomes /var/lib/skm, owned by the service user, for the volume).
FROM scratch
COPY rootfs/ /
COPY --chown=10001:10001 state/ /var/lib/skm/
USER 10001:10001
EXPOSE 7703
HEALTHCHECK --interval=5s --timeout=8s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/system-keyd", "health"]
ENTRYPOINT ["/usr/local/bin/system-keyd"]
