"""What the pipeline knows whatever the stage: datasets, reasons, errors, identifiers."""
