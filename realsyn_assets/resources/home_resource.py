"""The one REALSYN_HOME setting, shared by every resource that derives paths from it."""

import dagster as dg
from pydantic import Field

from realsyn_assets.resources.home import Home


class HomeResource(dg.ConfigurableResource):
    """The root folder of one REALSYN_HOME; storage, metrics, vectors and the encoder nest it.

    In the Definitions it is also the top-level resource `home`, so one launchpad setting moves
    every path at once.
    """

    path: str = Field(
        "",
        description="Root folder of all outputs; empty = $REALSYN_HOME (read at run time), "
        "else ./realsyn_home.",
    )

    @property
    def layout(self) -> Home:
        """The folder layout (paths of data, models, LanceDB, DuckDB, Dagster instance)."""
        return Home(self.path or None)


class HomeBasedResource(dg.ConfigurableResource):
    """Base of the resources that nest the home; `home` defaults to $REALSYN_HOME at run time."""

    home: HomeResource = Field(description="The REALSYN_HOME this resource derives its paths from.")

    def __init__(self, **data):
        # Dagster cannot default a nested resource field; an unset home is the default home.
        if data.get("home") is None:
            data["home"] = HomeResource()
        super().__init__(**data)

    @property
    def layout(self) -> Home:
        return self.home.layout
