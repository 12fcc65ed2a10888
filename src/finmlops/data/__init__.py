"""finmlops.data"""
