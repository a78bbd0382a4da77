"""The codon task: translate RNA into protein, the demo this package is built around.

The source is an RNA sequence, one token per nucleotide (``A C G U``); the target is the
protein, one token per residue (the 20 amino acids and ``*`` for a stop codon), exactly what
Biopython's ``translate()`` gives. The model is never told that three nucleotides make one
codon: it has to find that out.

Modules, read in this order:

* :mod:`.genetic_code` -- the NCBI translation tables (standard, vertebrate mitochondrial,
  ...), :func:`translate`, and why there is no ``B`` or ``Z``;
* :mod:`.sequences` -- cleaning and checking what people type: DNA or RNA, FASTA files;
* :mod:`.data` -- random training pairs, CSV files of pairs, and real genes shipped with
  the package;
* :mod:`.train` and :mod:`.finetune` -- the training recipe, translating with a model, and
  transfer learning to another genetic code.

The ``minitransformer codon`` commands (:mod:`.cli`, options only) are built on an API of
their own, usable from Python: :mod:`.checkpoints` (saving and loading codon models),
:mod:`.inputs` (the user's files, checked), :mod:`.report` (tables and pictures in the
task's words), :mod:`.runs` (train or fine-tune to a file), :mod:`.evaluation` (evaluate,
translate, draw the attention) and :mod:`.demo` (the demo's steps).
"""
from .data import (check_pairs, generate_pairs, load_example_genes, protein_vocabulary,
                   read_pairs_csv, rna_vocabulary, write_pairs_csv)
from .genetic_code import (AMINO_ACIDS, AVAILABLE_TABLES, CODONS, NUCLEOTIDES, PROTEIN_ALPHABET,
                           STOP, GeneticCode, differing_codons, get_genetic_code,
                           synonymous_codons, translate)
from .sequences import SequenceError, normalize_protein, normalize_rna, read_fasta

__all__ = [
    "AMINO_ACIDS", "AVAILABLE_TABLES", "CODONS", "NUCLEOTIDES", "PROTEIN_ALPHABET", "STOP",
    "GeneticCode", "SequenceError", "check_pairs", "differing_codons", "generate_pairs",
    "get_genetic_code", "load_example_genes", "normalize_protein", "normalize_rna",
    "protein_vocabulary", "read_fasta", "read_pairs_csv", "rna_vocabulary",
    "synonymous_codons", "translate", "write_pairs_csv",
]
