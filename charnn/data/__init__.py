"""Text in, ids out: everything charnn knows about corpora.

    text      reading a corpus as strict UTF-8; the character vocabulary
    batches   the train/validation split; B streams cut into chunks of T (truncated BPTT)
    encoded   a large corpus encoded once into a memory-mapped ids cache beside it
    corpora   the registry of known corpora: finding, downloading and building them
"""
