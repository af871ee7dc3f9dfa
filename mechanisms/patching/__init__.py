"""How any mechanism reaches a model: the one dispatcher and its surfaces (see DESIGN.md, "The one dispatcher,
on every surface"). Architecture names live only under `surfaces/`."""
