#!/bin/sh
# findings-ok.sh CMD... -- run CMD; exit 0 if it exited 0 or 2, else 1.
# `clockprov check` exits 2 for findings, and on the benchmark's test hosts
# (no systemd, so no daemon can report being synchronized) every host has one;
# hyperfine and scripts/bench.sh count any other exit as a failed run.
"$@"
case $? in
    0 | 2) exit 0 ;;
    *) exit 1 ;;
esac
