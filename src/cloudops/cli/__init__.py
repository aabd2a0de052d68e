"""The thin command line: binds flags to library calls, draws progress, maps errors to
exit codes. No work happens here."""
