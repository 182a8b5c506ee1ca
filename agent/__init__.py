"""gpucap node agent: signed GPU samples and answers to the oracles' work challenges."""
