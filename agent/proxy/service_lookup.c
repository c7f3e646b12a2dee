// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "proxy/service_lookup.h"

#include <arpa/inet.h>

#include "common/addr.h"

/* The port of svc matching port_be, or NULL when svc lacks vip:port. */
static const struct config_port *route_match(const struct config_service *svc,
					     const struct shoal_addr *vip, uint16_t port_be)
{
	uint16_t port = ntohs(port_be);
	bool has_vip = false;

	for (int i = 0; i < svc->n_vips && !has_vip; i++)
		has_vip = addr_equal(&svc->vips[i], vip);
	if (!has_vip)
		return NULL;
	for (int i = 0; i < svc->n_ports; i++)
		if (svc->ports[i].port == port)
			return &svc->ports[i];
	return NULL;
}

const struct config_service *service_lookup(const struct config *cfg, const struct shoal_orig_dst *orig,
					const struct config_port **port_out)
{
	const struct config_service *svc;
	const struct config_port *port;

	if (orig->svc_id < (uint32_t)cfg->n_services) {
		svc = cfg->services[orig->svc_id];
		port = route_match(svc, &orig->ip, orig->port);
		if (port) {
			*port_out = port;
			return svc;
		}
	}
	return config_find_service(cfg, &orig->ip, orig->port, port_out);
}

uint16_t service_target_port_be(const struct config_port *port)
{
	/* config fills target_port in; a hand-built config may leave it 0. */
	return htons(port->target_port ? port->target_port : port->port);
}
