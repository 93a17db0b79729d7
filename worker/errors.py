"""User-facing errors of the worker side.

Every failure a user can cause (bad file, wrong architecture, unknown layer, empty dataset, …) is raised
as a :class:`ConceptEvoError` whose message is one line naming the file or id and the cause. The CLI
prints it without a traceback; job handlers store it in the job row.
"""


class ConceptEvoError(Exception):
    """An error caused by the user's input, with a one-line message fit to show as is."""
