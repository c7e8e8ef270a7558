"""proxpipe_lab.tools.banner: the one-line banner of a lab host."""


def banner(text: str, host: str) -> str:
    return f"{host}: {text}"


class FilterModule:
    def filters(self):
        return {"banner": banner}
