"""Every protocol behind `fusionrec eval`: retrieval (leave-last-out), re-rank, conversations."""
