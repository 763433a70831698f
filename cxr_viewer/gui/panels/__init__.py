"""Side panels of the main window; each listens to the ViewerState and changes it, nothing else."""
