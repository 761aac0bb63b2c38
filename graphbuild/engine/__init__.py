"""The engine: loading, analysis, the graphs, the scheduler, caches and the store's bookkeeping."""
