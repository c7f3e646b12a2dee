/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Which service an intercepted connection belongs to, from the original
 * destination the datapath recorded.
 */
#ifndef SHOAL_PROXY_SERVICE_LOOKUP_H
#define SHOAL_PROXY_SERVICE_LOOKUP_H

#include "config/config.h"
#include "shoal/abi.h"

/*
 * The service and port orig was headed for, or NULL. orig->svc_id is
 * trusted only when that service really has orig->ip among its VIPs and
 * a port equal to orig->port: the datapath's ids come from the config
 * the maps were last filled from, which may lag a reload. Otherwise the
 * (VIP, port) pair is looked up. *port_out is set on success.
 */
const struct config_service *service_lookup(const struct config *cfg, const struct shoal_orig_dst *orig,
					const struct config_port **port_out);

/* The endpoint port (network order) a connection to port is carried to. */
uint16_t service_target_port_be(const struct config_port *port);

#endif
