"""How fast a local S3 server itself moves one large object, measured
with boto3: a single PutObject and a single GetObject, and GetObject split
into N parallel ranges. The ceiling any client can reach on that server.

    .venv/bin/python -P bench/s3_ceiling.py ENDPOINT FILE
"""
import concurrent.futures as cf
import sys
import time

import boto3

endpoint, path = sys.argv[1], sys.argv[2]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id="x", aws_secret_access_key="x")
try:
    s3.create_bucket(Bucket="ceiling")
except Exception:
    pass
data = open(path, "rb").read()
mb = len(data) / 1e6
t = time.time()
s3.put_object(Bucket="ceiling", Key="k", Body=data)
put = time.time() - t
t = time.time()
s3.get_object(Bucket="ceiling", Key="k")["Body"].read()
get = time.time() - t
print(f"| {endpoint} | {mb:.0f} MB | PUT {put:.2f} s ({mb/put:.0f} MB/s) | GET {get:.2f} s ({mb/get:.0f} MB/s) |", end="")
for parts in (4, 8):
    n = len(data)
    size = (n + parts - 1) // parts
    t = time.time()
    with cf.ThreadPoolExecutor(parts) as ex:
        list(ex.map(lambda i: s3.get_object(Bucket="ceiling", Key="k",
                                            Range=f"bytes={i*size}-{min(n, (i+1)*size)-1}")["Body"].read(), range(parts)))
    d = time.time() - t
    print(f" {parts} ranges {d:.2f} s ({mb/d:.0f} MB/s) |", end="")
print()
s3.delete_object(Bucket="ceiling", Key="k")
