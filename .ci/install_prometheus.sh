#!/usr/bin/env bash
# Debian's prometheus package (promtool and prometheus, for the exposition tests), installed
# without starting its service: the package's postinst would start Prometheus on :9090 where an
# init system exists, and the tests start their own on free ports. During the install a
# policy-rc.d that answers 101 ("action forbidden") tells invoke-rc.d to start nothing, so
# nothing has to be stopped, or killed, afterwards. A policy-rc.d already there is put back.
# Best effort: the tests that need these tools skip, saying so, when they are missing.
set -uo pipefail

POLICY_RC_D="${POLICY_RC_D:-/usr/sbin/policy-rc.d}"  # invoke-rc.d's fixed path; tests point it elsewhere

if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
  exit 0
fi

saved=""
if [ -e "$POLICY_RC_D" ]; then
  saved="$POLICY_RC_D.aios-saved"
  mv "$POLICY_RC_D" "$saved"
fi
restore() {
  rm -f "$POLICY_RC_D"
  if [ -n "$saved" ]; then mv "$saved" "$POLICY_RC_D"; fi
}
trap restore EXIT
printf '#!/bin/sh\n# placed by .ci/install_prometheus.sh for the length of one apt-get install\nexit 101\n' >"$POLICY_RC_D"
chmod 0755 "$POLICY_RC_D"

if ! (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null); then
  echo "warning: could not install Debian's prometheus package"
fi
exit 0
