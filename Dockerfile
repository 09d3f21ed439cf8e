# The meldpunt service: the package and its dependencies on python:3.11-slim, run as a plain user.
# compose.yaml runs it on PostgreSQL with the operator's config mounted over the sample one.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

COPY . /tmp/meldpunt-src
RUN pip install /tmp/meldpunt-src && rm -rf /tmp/meldpunt-src

# data_dir "var" and config/meldpunt.yaml are relative to the working directory.
RUN useradd --system --uid 10001 --home-dir /srv/meldpunt --create-home meldpunt \
    && mkdir /srv/meldpunt/var && chown meldpunt:meldpunt /srv/meldpunt/var
COPY config /srv/meldpunt/config
WORKDIR /srv/meldpunt
USER meldpunt

EXPOSE 8750
CMD ["sh", "-c", "meldpunt migrate && exec meldpunt serve --host 0.0.0.0"]
