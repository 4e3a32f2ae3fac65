"""(commands registered here; being written)"""
