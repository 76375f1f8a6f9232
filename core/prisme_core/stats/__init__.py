"""The read side: the stats API's queries, parsed and answered."""
