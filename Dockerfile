# bma-monitor's container image. No container engine runs where this project is built and
# tested, so this file stays a straight mirror of scripts/install, which the tests run
# (tests/test_install.py): the builder stage runs that script, the final stage copies its
# virtualenv and adds only what a container needs (user, volume, port, health check).

# Both stages use the same image, so the venv's interpreter path is valid in the second.
FROM python:3.11-slim-bookworm AS builder
# .dockerignore lets in only what scripts/install copies: pyproject.toml, README.md, monitor/.
COPY . /src
RUN /src/scripts/install /opt/bma-monitor

FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="bma-monitor" \
      org.opencontainers.image.description="Health monitoring of the administrative mailboxes (BMA) of FWB schools and organising bodies" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="EUPL-1.2" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim-bookworm"

# A fixed uid, so a bind-mounted state folder or secrets can be given to it on the host.
RUN groupadd --system --gid 10001 bma-monitor \
    && useradd --system --no-log-init --uid 10001 --gid bma-monitor \
        --home-dir /var/lib/bma-monitor --no-create-home --shell /usr/sbin/nologin bma-monitor \
    && install -d -o bma-monitor -g bma-monitor -m 0700 /var/lib/bma-monitor \
    && install -d -m 0755 /etc/bma-monitor

COPY --from=builder /opt/bma-monitor /opt/bma-monitor

# CREDENTIALS_DIRECTORY is where the daemon looks for secrets when the configuration names
# no credentials.directory (as under systemd's LoadCredential=): mount the files there.
ENV PATH="/opt/bma-monitor/bin:${PATH}" \
    CREDENTIALS_DIRECTORY=/run/secrets/bma-monitor \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# The state file (lock-outs, results, the warning-mail outbox) must outlive the container.
VOLUME ["/var/lib/bma-monitor"]
# http.listen's port; the configuration must listen on 0.0.0.0:9834 to be reached from outside.
EXPOSE 9834
USER 10001:10001

# No curl in the slim image: the venv's own Python asks /healthz, which fails (503) when the
# dispatcher falls behind; urlopen raises on any answer but 2xx.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/opt/bma-monitor/bin/python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9834/healthz', timeout=3)"]

# SIGTERM ends a probe cycle or a mail send cleanly (state and outbox intact); SIGHUP reloads.
STOPSIGNAL SIGTERM
ENTRYPOINT ["bma-monitor"]
CMD ["run", "--config", "/etc/bma-monitor/bma-monitor.yaml"]
