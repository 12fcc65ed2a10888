"""finmlops.deploy"""
