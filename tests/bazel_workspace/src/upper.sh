#!/bin/sh
# Copies stdin to stdout in upper case.
exec tr '[:lower:]' '[:upper:]'
