#!/usr/bin/env bash
# Installs the system packages Loom's embedded services need, when they are missing:
# a Java 17 runtime and Maven (Apache Kafka, resolved from Maven Central) and Node.js with npm
# (TimescaleDB compiled to WASM, used by the tests of the hypertable path), tesseract with its
# English data (screenshot OCR), espeak-ng (the speech the audio tests are made of) and Dovecot's
# IMAP server (the email fetcher's tests run a real one on 127.0.0.1), faketime
# (scripts/test-anytime.sh runs the tests at other dates and times) and Chromium (Playwright drives
# it in the day page's browser tests; no browser is downloaded).
set -euo pipefail
missing=()
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
command -v mvn  >/dev/null || missing+=(maven)
command -v node >/dev/null || missing+=(nodejs)
command -v npm  >/dev/null || missing+=(npm)
command -v tesseract >/dev/null || missing+=(tesseract-ocr)
[ -e /usr/share/tesseract-ocr/5/tessdata/eng.traineddata ] || [ -e /usr/share/tesseract-ocr/4.00/tessdata/eng.traineddata ] \
  || missing+=(tesseract-ocr-eng)
command -v espeak-ng >/dev/null || missing+=(espeak-ng)
[ -x /usr/sbin/dovecot ] || missing+=(dovecot-imapd)
command -v faketime >/dev/null || missing+=(faketime)
command -v chromium >/dev/null || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing system packages: ${missing[*]} (install them, or run as root)" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
