from scoremodels.cli import command

command()
