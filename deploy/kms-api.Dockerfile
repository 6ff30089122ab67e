# skm/kms-api: the user and operator tier: keystores and keys, sealed under the system key.
# FROM scratch: one static binary, its config, nothing else (no shell).
# Build with deploy/build-images, which stages the context (see deploy/README.md):
#   rootfs/usr/local/bin/kms-api, rootfs/etc/skm/kms-api.toml, rootfs/etc/nsswitch.conf,
#   state/ (empty: becomes /var/lib/skm, owned by the service user, for the volume).
FROM scratch
COPY rootfs/ /
COPY --chown=10001:10001 state/ /var/lib/skm/
USER 10001:10001
EXPOSE 7700 7701
HEALTHCHECK --interval=5s --timeout=8s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/kms-api", "health"]
ENTRYPOINT ["/usr/local/bin/kms-api"]
