# boot.py: runs before main.py on every reset. Kept trivial on purpose: a bug here would
# lock out the REPL, and everything that can fail lives in main.py instead.
import gc

gc.collect()
