"""What ``etl_file.status`` can say about a file, in one place."""

from __future__ import annotations

PROCESSING = "processing"
ACCEPTED = "accepted"
PARTIALLY_ACCEPTED = "partially_accepted"
REJECTED = "rejected"
DUPLICATE = "duplicate"

LOADED = (ACCEPTED, PARTIALLY_ACCEPTED)  # rows of the file are in the warehouse
FINAL = (*LOADED, REJECTED)  # decided; only the answer to the bank may still be owed
