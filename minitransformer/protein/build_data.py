"""Make the protein demo's data files from MMseqs2's example database (run by hand, once).

The source is ``DB.fasta.gz`` of the Debian package ``mmseqs2-examples``: 20,000 UniProtKB
proteins with their UniProt names. To rebuild the files::

    apt-get download mmseqs2-examples && dpkg -x mmseqs2-examples_*.deb deb
    python -m minitransformer.protein.build_data deb/usr/share/doc/mmseqs2/example-data/DB.fasta.gz

It writes, next to this file, ``data/families.csv`` (the labelled sequences: the protein
families of :data:`FAMILIES`, each a UniProt protein name, whole sequences) and
``data/pretrain.csv.gz`` (unlabelled sequences for masked language modelling, cut to
:data:`PRETRAIN_CROP` residues, with every sequence that resembles a family sequence left
out: no family member, under its name or any other, is seen in pre-training).
"""
from __future__ import annotations

import gzip
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

DATA = Path(__file__).resolve().parent / "data"

#: The classes: UniProt protein names with at least 30 sequences in the source, close
#: relatives left out (RNA polymerase beta and beta', the ABC transporter ATPases).
FAMILIES = ("Threonine--tRNA ligase", "Leucine--tRNA ligase", "DNA ligase", "30S ribosomal protein S6",
            "Translation initiation factor IF-2", "Protein translocase subunit SecA",
            "DNA mismatch repair protein MutS", "Chaperone protein DnaK", "Protein GrpE",
            "Elongation factor P", "Chromosomal replication initiator protein DnaA", "Adenylate kinase")
PRETRAIN_CROP = 128
#: How many pre-training sequences are kept (drawn at random): enough for the demo's budget.
PRETRAIN_SEQUENCES = 12000
#: A sequence sharing this fraction of its 8-mers with the family sequences is left out of
#: pre-training (two unrelated proteins share almost none: there are 20^8 = 2.6e10 8-mers).
KMER = 8
SHARED_KMER_LIMIT = 0.02
STANDARD = set("ACDEFGHIKLMNPQRSTVWY")


def read_fasta(path):
    """(header, sequence) pairs of a FASTA file (gzip-compressed or not)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    header, parts = None, []
    with opener(path, "rt") as f:
        for line in f:
            if line.startswith(">"):
                if header is not None:
                    yield header, "".join(parts)
                header, parts = line[1:].strip(), []
            else:
                parts.append(line.strip())
    if header is not None:
        yield header, "".join(parts)


def parse_header(header):
    """UniProt header -> (accession, protein name, organism)."""
    match = re.match(r"(?:sp|tr)\|(\w+)\|\S+\s+(.*?)\s+OS=(.*?)(?:\s+OX=|\s+GN=|\s+PE=|$)", header)
    return match.groups() if match else (header.split()[0], "", "")


def kmers(sequence, k=KMER):
    return {sequence[i:i + k] for i in range(len(sequence) - k + 1)}


def main(source):
    rows = [(*parse_header(h), s) for h, s in read_fasta(source)]
    table = pd.DataFrame(rows, columns=["accession", "name", "organism", "sequence"])
    table = table[table.sequence.map(lambda s: set(s) <= STANDARD)]       # 20 standard residues only
    families = table[table.name.isin(FAMILIES)].rename(columns={"name": "family"})
    family_kmers = set().union(*families.sequence.map(kmers))
    rest = table[~table.name.isin(FAMILIES)]
    shared = rest.sequence.map(lambda s: len(kmers(s) & family_kmers) / max(1, len(s) - KMER + 1))
    pretrain = rest[shared < SHARED_KMER_LIMIT]
    rng = np.random.default_rng(0)
    pretrain = pretrain.iloc[np.sort(rng.permutation(len(pretrain))[:PRETRAIN_SEQUENCES])]
    starts = [int(rng.integers(0, max(1, len(s) - PRETRAIN_CROP + 1))) for s in pretrain.sequence]
    crops = [s[a:a + PRETRAIN_CROP] for s, a in zip(pretrain.sequence, starts)]
    pretrain = pd.DataFrame({"accession": pretrain.accession.values, "sequence": crops})
    DATA.mkdir(exist_ok=True)
    families.sort_values(["family", "accession"]).to_csv(DATA / "families.csv", index=False)
    pretrain.to_csv(DATA / "pretrain.csv.gz", index=False, compression={"method": "gzip", "mtime": 0})
    print(f"{len(families)} family sequences in {families.family.nunique()} families; "
          f"{int((shared >= SHARED_KMER_LIMIT).sum())} sequences left out of pre-training as similar to a "
          f"family sequence; {len(pretrain)} pre-training sequences kept, {sum(map(len, crops)):,} residues")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m minitransformer.protein.build_data PATH/TO/DB.fasta.gz")
    main(sys.argv[1])
