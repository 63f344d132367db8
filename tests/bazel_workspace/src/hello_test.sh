#!/bin/sh
# Runs the hello binary (path given as $1, relative to the runfiles directory) and checks
# its output.
set -eu
bin="$1"
case "$bin" in
  /*) ;;
  *) bin="./$bin" ;;
esac
expected="hello, test!
triangle(10) = 55"
actual="$("$bin" test)"
if [ "$actual" != "$expected" ]; then
  echo "unexpected output from $bin:" >&2
  echo "$actual" >&2
  exit 1
fi
echo "PASS"
