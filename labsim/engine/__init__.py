"""The running lab: services on real sockets, the scheduler of virtual time, the output tree."""
