// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "proxy/http_error.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "proxy/http1_parser.h"

static const struct {
	int status;
	const char *stage;
	const char *body;
} http_errors[] = {
#define HTTP_ERROR_ROW(id, status, stage, body) [HTTP_ERR_##id] = {status, stage, body},
    HTTP_ERRORS(HTTP_ERROR_ROW)
#undef HTTP_ERROR_ROW
};

static const char *http_error_reason(int status)
{
	switch (status) {
	case 400:
		return "Bad Request";
	case 408:
		return "Request Timeout";
	case 414:
		return "URI Too Long";
	case 431:
		return "Request Header Fields Too Large";
	case 501:
		return "Not Implemented";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	case 505:
		return "HTTP Version Not Supported";
	default:
		return "Error";
	}
}

int http_error_status(enum http_error err)
{
	return err < HTTP_ERR__COUNT ? http_errors[err].status : 500;
}

const char *http_error_stage(enum http_error err)
{
	return err < HTTP_ERR__COUNT ? http_errors[err].stage : "internal";
}

enum http_error http_error_from_parse(int result)
{
	switch (result) {
	case HTTP1_E_URI_TOO_LONG:
		return HTTP_ERR_URI_TOO_LONG;
	case HTTP1_E_HEAD_TOO_LARGE:
		return HTTP_ERR_HEAD_TOO_LARGE;
	case HTTP1_E_NOT_IMPLEMENTED:
		return HTTP_ERR_NOT_IMPLEMENTED;
	case HTTP1_E_BAD_VERSION:
		return HTTP_ERR_BAD_VERSION;
	default:
		return HTTP_ERR_BAD_REQUEST;
	}
}

size_t http_error_format(enum http_error err, char *buf, size_t cap)
{
	return http_error_format_with(err, NULL, NULL, buf, cap);
}

size_t http_error_format_with(enum http_error err, const char *name, const char *value, char *buf,
			      size_t cap)
{
	int status = http_error_status(err);
	const char *body = err < HTTP_ERR__COUNT ? http_errors[err].body : "internal error";
	bool extra = name && value;
	int n;

	/* The body ends in a newline so that curl output stays readable. */
	n = snprintf(buf, cap,
		     "HTTP/1.1 %d %s\r\n"
		     "content-type: text/plain\r\n"
		     "content-length: %zu\r\n"
		     "x-shoal-error: %s\r\n"
		     "%s%s%s%s"
		     "connection: close\r\n"
		     "\r\n"
		     "%s\n",
		     status, http_error_reason(status), strlen(body) + 1, http_error_stage(err),
		     extra ? name : "", extra ? ": " : "", extra ? value : "", extra ? "\r\n" : "",
		     body);
	if (n < 0 || (size_t)n >= cap)
		return 0;
	return (size_t)n;
}
