"""Text and markdown rendering of a benchmark table, shared by bench/run.py
and bench/net/run.py. A table is a list of rows of strings, header first."""


def render_text(rows):
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]

    def line(row):
        # Row names left-aligned, numbers right-aligned so magnitudes line up.
        cols = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        return "  ".join(cols).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(rows[0]), rule, *map(line, rows[1:])])


def render_markdown(rows):
    def line(row):
        return "| " + " | ".join(row) + " |"

    align = "|" + "|".join([":---"] + ["---:"] * (len(rows[0]) - 1)) + "|"
    return "\n".join([line(rows[0]), align, *map(line, rows[1:])])
