"""`cloudops status`: which version is in which account, and is anything out of line.

collect.py   reads every account (I/O): ECR DescribeImages, the package store, history
matrix.py    computes the marks (pure)
model.py     the values, and their JSON shape
html.py      one self-contained HTML page (pure)
tags.py      a repository's tags, newest first (`cloudops tags`)

Nothing is imported here: `cloudops tags` needs matrix.py, not collect.py's boto3.
"""
