#!/bin/sh
# Placeholder for Bazel's coverage tools: every test rule depends on them, but the Cairn
# tests never run `bazel coverage`, so this must never run.
echo "remote_coverage_tools is an offline stand-in: coverage is not supported" >&2
exit 1
