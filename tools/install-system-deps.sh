#!/usr/bin/env bash
# Installs the Debian packages the system tests need (real SSH/gitolite and HTTP git servers,
# a real browser). Starts nothing: a policy-rc.d that refuses every service start is in place
# while apt runs, so no system service comes up. Without root or apt it only says what is
# missing; the tests that need a missing program then skip with that reason (fail under CI=true).
set -u
pkgs=(openssh-server openssh-client gitolite3 apache2 chromium chromium-driver jq)
bins=(/usr/sbin/sshd /usr/bin/ssh-keygen /usr/bin/gitolite /usr/sbin/apache2 /usr/bin/chromium /usr/bin/chromedriver /usr/bin/jq)
missing=0
for b in "${bins[@]}"; do [ -e "$b" ] || missing=1; done
[ "$missing" = 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install-system-deps: not root or no apt-get; missing system test programs: ${pkgs[*]}" >&2
  exit 0
fi
made_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made_policy=1
fi
echo "install-system-deps: apt-get install ${pkgs[*]}" >&2
apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
  --no-install-recommends "${pkgs[@]}" >/dev/null
rc=$?
[ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
exit $rc
