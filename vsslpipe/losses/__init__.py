"""Loss functions (InfoNCE, NT-Xent, multi-positive, LTCL, shuffle-degree prediction)."""
