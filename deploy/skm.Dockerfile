# skm/skm: the skm CLI for client, operator and init containers.
# FROM scratch: static binaries, nothing else (no shell):
#   /usr/local/bin/skm               the CLI (entrypoint)
#   /usr/local/bin/skm-compose-init  the compose stack's one-shot PKI init
#   /usr/local/bin/skm-probe         resolve / connect / scan, for network diagnostics
# Mount points owned by the service user, so that fresh named volumes mounted
# there take that owner: /pki/{ca,root-keyd,system-keyd,kms-api,operator}
# (init) and /var/lib/skm/operator (the operator's certificate and profile).
# Build with deploy/build-images, which stages the context (see deploy/README.md).
FROM scratch
COPY rootfs/ /
COPY --chown=10001:10001 state/pki/ /pki/
COPY --chown=10001:10001 state/operator/ /var/lib/skm/operator/
USER 10001:10001
ENV SKM_PROFILE=/var/lib/skm/operator/profile.toml
ENTRYPOINT ["/usr/local/bin/skm"]
