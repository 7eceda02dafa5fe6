"""Print the N-th fenced ```bash block of README.md (1-based): CI runs exactly what users read."""
import re
import sys
from pathlib import Path

blocks = re.findall(r"^```bash\n(.*?)^```", Path("README.md").read_text(), flags=re.S | re.M)
index = int(sys.argv[1]) - 1
if index >= len(blocks):
    sys.exit(f"README.md has {len(blocks)} bash blocks, wanted block {index + 1}")
print(blocks[index])
