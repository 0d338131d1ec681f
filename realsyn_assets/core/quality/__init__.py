"""Quality report (paper §3, Table 1 funnels): the corpus's funnels next to the paper's."""
