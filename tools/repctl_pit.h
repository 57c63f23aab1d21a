/* SPDX-License-Identifier: MIT */
/* repctl's point-in-time commands: points, test-failover, failover. */
#ifndef REPCTL_PIT_H
#define REPCTL_PIT_H

#include <stdbool.h>

/* True when @cmd is one of them. */
bool repctl_pit_command(const char *cmd);

/* Run one: argv[0] is the command. Returns repctl's exit status. */
int repctl_pit_main(const char *hub, int argc, char **argv);

#endif /* REPCTL_PIT_H */
