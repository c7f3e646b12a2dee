#!/usr/bin/env bash
# SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#
# Validate every object in manifests/ offline, against the Kubernetes
# OpenAPI schemas shipped in the npm package kubernetes-models (4.x, with
# @kubernetes-models/validate; runs on Node 20), and check what the
# schemas cannot: kustomization.yaml names exactly the files present, and
# each service account's roles grant what it needs and nothing more, and
# shoald's config, DaemonSet and shoal-identity's Deployment agree (token
# audience, anchors, ports, names), and the Secret and ConfigMap that
# scripts/identity-pki makes are valid objects, and the DaemonSet sets
# every ${NAME} the ConfigMap's config needs, and runs the image scripts/image builds as it is built:
# its name and tag, its file capabilities, its uid, the pin root.
#
#   scripts/validate-manifests.sh [MANIFEST_DIR]
#
# The packages are installed with npm into build-manifests/ (override
# with VALIDATE_DIR), never committed. Exits non-zero on the first
# problem, naming the file, the object and the field.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
manifests=$(cd "${1:-$root/manifests}" && pwd)
work=${VALIDATE_DIR:-$root/build-manifests}

command -v node >/dev/null || { echo "validate-manifests: node is missing (Node 20 is expected)" >&2; exit 1; }
command -v npm >/dev/null || { echo "validate-manifests: npm is missing" >&2; exit 1; }

mkdir -p "$work"
if [[ ! -d $work/node_modules/kubernetes-models || ! -d $work/node_modules/yaml ||
	! -d $work/node_modules/ajv ]]; then
	echo "validate-manifests: installing kubernetes-models@4, yaml@2 and ajv@8 into $work"
	(cd "$work" && { [[ -f package.json ]] || npm init -y >/dev/null; } &&
		npm install --no-audit --no-fund --silent kubernetes-models@4 yaml@2 ajv@8 >/dev/null)
fi

cat >"$work/validate.js" <<'JS'
"use strict";
// Argument: the manifest directory. Prints one line per object.
const fs = require("fs");
const path = require("path");
const YAML = require("yaml");

const dir = process.argv[2];
let failures = 0;
function fail(msg) {
	console.error("validate-manifests: " + msg);
	failures++;
}

// apiVersion "v1" is the core group: kubernetes-models/v1/Kind.
function modelFor(apiVersion, kind) {
	const mod = "kubernetes-models/" + apiVersion + "/" + kind;
	try {
		return require(mod)[kind];
	} catch (e) {
		return null;
	}
}

const kust = YAML.parse(fs.readFileSync(path.join(dir, "kustomization.yaml"), "utf8"));
if (kust.kind !== "Kustomization")
	fail("kustomization.yaml: kind must be Kustomization");
const listed = new Set(kust.resources || []);
const present = fs.readdirSync(dir).filter((f) => /\.ya?ml$/.test(f) && f !== "kustomization.yaml");
for (const f of present)
	if (!listed.has(f)) fail(`kustomization.yaml: ${f} is not listed in resources`);
for (const f of listed)
	if (!present.includes(f)) fail(`kustomization.yaml: resource ${f} does not exist`);

const objects = [];
for (const file of [...listed].filter((f) => present.includes(f))) {
	const docs = YAML.parseAllDocuments(fs.readFileSync(path.join(dir, file), "utf8"));
	docs.forEach((doc, i) => {
		if (doc.errors.length) {
			fail(`${file}: document ${i + 1}: ${doc.errors[0].message}`);
			return;
		}
		const obj = doc.toJSON();
		if (obj === null) return;
		const where = `${file}: ${obj.kind}/${obj.metadata && obj.metadata.name}`;
		const Model = modelFor(obj.apiVersion, obj.kind);
		if (!Model) {
			fail(`${where}: no schema for ${obj.apiVersion} ${obj.kind}`);
			return;
		}
		try {
			new Model(obj).validate();
			console.log(`ok  ${where} (${obj.apiVersion})`);
		} catch (e) {
			fail(`${where}: ${e.message}`);
		}
		// kustomize sets this namespace on namespaced objects.
		if (obj.metadata && obj.metadata.namespace && kust.namespace &&
		    obj.metadata.namespace !== kust.namespace)
			fail(`${where}: namespace ${obj.metadata.namespace}, kustomization says ${kust.namespace}`);
		objects.push(obj);
	});
}

// The CRD's schema against example objects (tests/k8s/fixtures/
// authorizationpolicies.{good,bad}.yaml, which the agent's decoder tests read
// too): the good ones pass, every bad one is refused, so that the API and the
// agent refuse the same mistakes. ajv: JSON Schema, with Kubernetes' x-
// keywords ignored (strict: false).
{
	const Ajv = require("ajv");
	const crd = objects.find((o) => o.kind === "CustomResourceDefinition" &&
		o.metadata.name === "authorizationpolicies.shoal.io");
	if (!crd) {
		fail("no CustomResourceDefinition authorizationpolicies.shoal.io in the manifests");
	} else {
		const schema = crd.spec.versions[0].schema.openAPIV3Schema;
		const check = new Ajv({strict: false, allErrors: false}).compile(schema);
		const fixtures = path.join(process.argv[3], "authorizationpolicies");
		for (const [suffix, want] of [[".good.yaml", true], [".bad.yaml", false]]) {
			const docs = YAML.parseAllDocuments(fs.readFileSync(fixtures + suffix, "utf8"));
			for (const doc of docs) {
				const obj = doc.toJSON();
				const ok = check(obj);
				const where = `authorizationpolicies${suffix}: ${obj.metadata.name}`;
				if (ok !== want)
					fail(`${where}: the CRD schema ${ok ? "accepts" : "refuses"} it` +
						(ok ? "" : ` (${check.errors[0].instancePath} ${check.errors[0].message})`));
				else
					console.log(`ok  ${where} (${want ? "accepted" : "refused"} by the schema)`);
			}
		}
	}
}

// Least privilege, per service account (through the bindings): the
// agent reads services and endpointslices (discovery), pods and
// namespaces (enrollment); shoal-identity creates TokenReviews and lists
// and watches pods (docs/identity.md); nothing else, no one else.
const wantFor = {
	"shoal-system/shoald": ["/services list", "/services watch",
		"discovery.k8s.io/endpointslices list", "discovery.k8s.io/endpointslices watch",
		"/pods list", "/pods watch", "/namespaces list", "/namespaces watch",
		"shoal.io/authorizationpolicies list", "shoal.io/authorizationpolicies watch"],
	"shoal-system/shoal-identity": ["authentication.k8s.io/tokenreviews create",
		"/pods list", "/pods watch"],
};
const roleGrants = {};
for (const role of objects.filter((o) => o.kind === "ClusterRole" || o.kind === "Role")) {
	const got = (roleGrants[role.metadata.name] = new Set());
	for (const r of role.rules || [])
		for (const g of r.apiGroups || [])
			for (const res of r.resources || [])
				for (const v of r.verbs || []) got.add(`${g}/${res} ${v}`);
}
const saGrants = {};
for (const b of objects.filter((o) => o.kind === "ClusterRoleBinding" || o.kind === "RoleBinding"))
	for (const sub of b.subjects || []) {
		const who = sub.kind === "ServiceAccount" ? `${sub.namespace || kust.namespace}/${sub.name}` : `${sub.kind}/${sub.name}`;
		if (!wantFor[who]) fail(`${b.kind}/${b.metadata.name}: binds ${who}, which needs no role`);
		const set = (saGrants[who] = saGrants[who] || new Set());
		for (const g of roleGrants[b.roleRef.name] || []) set.add(g);
	}
for (const [who, want] of Object.entries(wantFor)) {
	const got = saGrants[who] || new Set();
	for (const g of got)
		if (!want.includes(g)) fail(`RBAC grants ${who} more than it needs: ${g}`);
	for (const w of want)
		if (!got.has(w)) fail(`RBAC lacks ${w} for ${who}`);
}

// The DaemonSet's promises (shared/DESIGN.md section 6).
const ds = objects.find((o) => o.kind === "DaemonSet");
if (!ds) fail("no DaemonSet");
else {
	const spec = ds.spec.template.spec;
	if (!spec.hostNetwork) fail("DaemonSet: hostNetwork must be true");
	if (spec.priorityClassName !== "system-node-critical")
		fail("DaemonSet: priorityClassName must be system-node-critical");
	if (!(spec.tolerations || []).some((t) => t.operator === "Exists" && !t.key))
		fail("DaemonSet: must tolerate every taint");
	const c = spec.containers[0];
	for (const probe of ["livenessProbe", "readinessProbe"])
		if (!c[probe]) fail(`DaemonSet: ${probe} missing`);
	const envs = (c.env || []).map((e) => e.valueFrom && e.valueFrom.fieldRef && e.valueFrom.fieldRef.fieldPath);
	for (const f of ["spec.nodeName", "status.hostIP"])
		if (!envs.includes(f)) fail(`DaemonSet: ${f} not passed through the downward API`);
	// shoald refuses a ${NAME} without a default that its environment
	// lacks (docs/config.md): every such NAME in the config must be set.
	const names = new Set((c.env || []).map((e) => e.name));
	for (const cm of objects.filter((o) => o.kind === "ConfigMap" && o.metadata.name === "shoal-config"))
		for (const [key, text] of Object.entries(cm.data || {}))
			for (const m of String(text).matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}/g))
				if (!m[2] && !names.has(m[1]))
					fail(`ConfigMap/${cm.metadata.name}: ${key} uses \${${m[1]}}, which the DaemonSet's container does not set`);
}

// The image (docs/image.md): every container runs what scripts/image
// built, the agent as its uid with exactly its file capabilities, and the
// init container prepares the pin root that the config and the mounts name.
if (ds) {
	const spec = ds.spec.template.spec;
	const ref = process.env.IMAGE_REF;
	const [refName, refTag] = [ref.slice(0, ref.lastIndexOf(":")), ref.slice(ref.lastIndexOf(":") + 1)];
	for (const c of [...(spec.initContainers || []), ...spec.containers])
		if (c.image !== ref) fail(`DaemonSet: container ${c.name} runs ${c.image}, scripts/image builds ${ref}`);
	const kimg = (kust.images || []).find((i) => i.name === refName);
	if (!kimg) fail(`kustomization.yaml: no images: entry for ${refName}`);
	else if (kimg.newTag !== refTag) fail(`kustomization.yaml: ${refName} newTag ${kimg.newTag}, scripts/image tags ${refTag}`);
	const c = spec.containers.find((x) => x.name === "shoald");
	const sc = (c && c.securityContext) || {};
	const want = process.env.IMAGE_CAPS.split(",").map((x) => x.replace(/^cap_/, "").toUpperCase()).sort();
	const add = ((sc.capabilities || {}).add || []).slice().sort();
	if (add.join(",") !== want.join(","))
		fail(`DaemonSet: shoald adds capabilities ${add}, the image's file capabilities are ${want}`);
	if (!((sc.capabilities || {}).drop || []).includes("ALL"))
		fail("DaemonSet: shoald must drop ALL capabilities before adding its own");
	if (String(sc.runAsUser) !== process.env.IMAGE_UID || sc.runAsNonRoot !== true)
		fail(`DaemonSet: shoald must run as the image's uid ${process.env.IMAGE_UID} (runAsNonRoot)`);
	if (sc.allowPrivilegeEscalation === false)
		fail("DaemonSet: allowPrivilegeEscalation false would void shoald's file capabilities");
	// docs/upgrade.md: a surge pod takes over from the old one over the
	// hand-over socket; that needs the socket in a hostPath both pods
	// mount, --handover-wait (an exited old container would restart and
	// take over back), and no host ports (they keep a surge pod off the node).
	const ru = ds.spec.updateStrategy && ds.spec.updateStrategy.rollingUpdate;
	if (!ru || ru.maxSurge !== 1 || ru.maxUnavailable !== 0)
		fail("DaemonSet: rollingUpdate must be maxSurge 1, maxUnavailable 0 (docs/upgrade.md)");
	const cmd = (c && c.command) || [];
	const hi = cmd.indexOf("--handover-socket");
	const sock = hi >= 0 ? cmd[hi + 1] : "";
	const sockDir = sock.replace(/\/[^/]*$/, "");
	const sm = ((c && c.volumeMounts) || []).find((m) => m.mountPath === sockDir);
	const svol = sm && spec.volumes.find((v) => v.name === sm.name);
	if (!sock || !svol || !svol.hostPath)
		fail(`DaemonSet: shoald's --handover-socket (${sock || "none"}) must be in a hostPath mount`);
	if (!cmd.includes("--handover-wait"))
		fail("DaemonSet: shoald needs --handover-wait: an exited old container would restart and take over back");
	const hostPorts = spec.containers.flatMap((x) => x.ports || []);
	if (ds.spec.template.spec.hostNetwork && hostPorts.length)
		fail(`DaemonSet: no ports: with hostNetwork (each is a host port, which keeps a surge pod off the node): ${hostPorts.map((p) => p.containerPort)}`);
	const cm = objects.find((o) => o.kind === "ConfigMap" && o.metadata.name === "shoal-config");
	const pinRoot = cm && ((YAML.parse(cm.data["shoal.yaml"]) || {}).bpf || {}).pin_root;
	const init = (spec.initContainers || []).find((x) => (x.command || [])[0] === "shoal-init");
	const env = (x, n) => ((x && x.env) || []).find((e) => e.name === n);
	if (!init) fail("DaemonSet: no init container runs shoal-init");
	else {
		if (!env(init, "SHOAL_PIN_ROOT") || env(init, "SHOAL_PIN_ROOT").value !== pinRoot)
			fail(`DaemonSet: shoal-init's SHOAL_PIN_ROOT must be the config's bpf.pin_root ${pinRoot}`);
		if (!env(init, "SHOAL_UID") || env(init, "SHOAL_UID").value !== process.env.IMAGE_UID)
			fail(`DaemonSet: shoal-init's SHOAL_UID must be ${process.env.IMAGE_UID}`);
	}
	const vm = ((c && c.volumeMounts) || []).find((m) => m.mountPath === pinRoot);
	const vol = vm && spec.volumes.find((v) => v.name === vm.name);
	if (!vol || !vol.hostPath || vol.hostPath.path !== pinRoot)
		fail(`DaemonSet: shoald must mount the host's ${pinRoot} at ${pinRoot}`);
}

// Workload identity (docs/identity.md): what shoald's config, its
// DaemonSet and shoal-identity's Deployment and Service must agree on.
const dep = objects.find((o) => o.kind === "Deployment" && o.metadata.name === "shoal-identity");
if (!dep) fail("no Deployment shoal-identity");
else if (ds) {
	const spec = dep.spec.template.spec;
	const c = spec.containers.find((x) => x.name === "shoal-identity");
	const cmd = (c && c.command) || [];
	const arg = (n) => (cmd.indexOf(n) >= 0 ? cmd[cmd.indexOf(n) + 1] : undefined);
	const dir = (p) => String(p).replace(/\/[^/]*$/, "");
	const ref = process.env.IMAGE_REF;
	for (const x of spec.containers)
		if (x.image !== ref) fail(`Deployment shoal-identity: container ${x.name} runs ${x.image}, scripts/image builds ${ref}`);
	if (cmd[0] !== "shoal-identity") fail("Deployment shoal-identity: the command is not shoal-identity");
	const sc = (c && c.securityContext) || {};
	if (sc.runAsNonRoot !== true || !((sc.capabilities || {}).drop || []).includes("ALL"))
		fail("Deployment shoal-identity: must run as non-root with ALL capabilities dropped");
	const dsSpec = ds.spec.template.spec;
	const agentSA = `${ds.metadata.namespace}/${dsSpec.serviceAccountName}`;
	if (arg("--node-agent") !== agentSA)
		fail(`Deployment shoal-identity: --node-agent ${arg("--node-agent")}, the DaemonSet runs as ${agentSA}`);
	// The volume behind the container's mount at path (the longest prefix).
	const volAt = (podSpec, container, path) => {
		const m = ((container && container.volumeMounts) || [])
			.filter((v) => path === v.mountPath || path.startsWith(v.mountPath + "/"))
			.sort((a, b) => b.mountPath.length - a.mountPath.length)[0];
		return m && (podSpec.volumes || []).find((v) => v.name === m.name);
	};
	const iss = volAt(spec, c, String(arg("--issuer-cert")));
	if (!iss || !iss.secret || iss.secret.secretName !== "shoal-identity-issuer" ||
	    dir(arg("--issuer-key")) !== dir(arg("--issuer-cert")))
		fail("Deployment shoal-identity: --issuer-cert and --issuer-key must be in the mounted Secret shoal-identity-issuer");
	const anc = volAt(spec, c, String(arg("--anchors")));
	if (!anc || !anc.configMap || anc.configMap.name !== "shoal-trust-anchors")
		fail("Deployment shoal-identity: --anchors must be in the mounted ConfigMap shoal-trust-anchors");
	const cfg = YAML.parse(objects.find((o) => o.kind === "ConfigMap" && o.metadata.name === "shoal-config").data["shoal.yaml"]) || {};
	const idc = cfg.identity;
	if (!idc) fail("ConfigMap/shoal-config: no identity: section");
	else {
		const agent = dsSpec.containers.find((x) => x.name === "shoald");
		const tok = volAt(dsSpec, agent, String(idc.token_file));
		const proj = tok && tok.projected && (tok.projected.sources || []).find((x) => x.serviceAccountToken);
		if (!proj || `${dir(idc.token_file)}/${proj.serviceAccountToken.path}` !== idc.token_file)
			fail(`DaemonSet: identity.token_file ${idc.token_file} is not a projected service-account token`);
		else if (proj.serviceAccountToken.audience !== arg("--audience"))
			fail(`DaemonSet: the token's audience ${proj.serviceAccountToken.audience}, shoal-identity's --audience ${arg("--audience")}`);
		const av = volAt(dsSpec, agent, String(idc.anchors_file));
		if (!av || !av.configMap || av.configMap.name !== "shoal-trust-anchors" ||
		    !String(idc.anchors_file).endsWith("/anchors.pem"))
			fail(`DaemonSet: identity.anchors_file ${idc.anchors_file} is not anchors.pem of the mounted ConfigMap shoal-trust-anchors`);
		if (idc.trust_domain !== arg("--trust-domain"))
			fail(`identity.trust_domain ${idc.trust_domain}, shoal-identity's --trust-domain ${arg("--trust-domain")}`);
		const u = new URL(idc.server_url);
		const svc = objects.find((o) => o.kind === "Service" && o.metadata.name === "shoal-identity");
		const port = svc && (svc.spec.ports || []).find((p) => String(p.port) === (u.port || "443"));
		const listenPort = String(arg("--listen")).replace(/^.*:/, "");
		if (u.hostname !== `shoal-identity.${dep.metadata.namespace}.svc` || !port ||
		    String(port.targetPort) !== listenPort)
			fail(`identity.server_url ${idc.server_url} does not reach the Service shoal-identity's port onto --listen ${arg("--listen")}`);
		if (!String(arg("--server-names")).split(",").includes(u.hostname))
			fail(`shoal-identity's --server-names lack ${u.hostname}, which the agents connect to`);
	}
}

// Objects the install makes (scripts/identity-pki): their shapes, by schema.
for (const file of (process.env.EXTRA_OBJECTS || "").split(" ").filter(Boolean)) {
	for (const doc of YAML.parseAllDocuments(fs.readFileSync(file, "utf8"))) {
		const obj = doc.toJSON();
		const where = `${path.basename(file)}: ${obj.kind}/${obj.metadata && obj.metadata.name}`;
		const Model = modelFor(obj.apiVersion, obj.kind);
		try {
			if (!Model) throw new Error(`no schema for ${obj.apiVersion} ${obj.kind}`);
			new Model(obj).validate();
			console.log(`ok  ${where} (${obj.apiVersion}, made by scripts/identity-pki)`);
		} catch (e) {
			fail(`${where}: ${e.message}`);
		}
	}
}

if (failures) {
	console.error(`validate-manifests: ${failures} problem(s)`);
	process.exit(1);
}
console.log(`validate-manifests: ${objects.length} objects valid`);
JS

# What scripts/image builds: the reference, the file capabilities and uid.
image_ref=$(bash "$root/scripts/image" --print-ref)
image_caps=$(sed -n 's/^FILE_CAPS=\(.*\)+ep$/\1/p' "$root/scripts/image")
image_uid=$(sed -n 's/^SHOAL_UID=\([0-9]*\)$/\1/p' "$root/scripts/image")
[[ -n $image_caps && -n $image_uid ]] || { echo "validate-manifests: no FILE_CAPS or SHOAL_UID in scripts/image" >&2; exit 1; }

# The Secret and ConfigMap the install makes, from a throw-away CA.
pki=$(mktemp -d)
trap 'rm -rf "$pki"' EXIT
bash "$root/scripts/identity-pki" "$pki" >/dev/null ||
	{ echo "validate-manifests: scripts/identity-pki failed" >&2; exit 1; }

IMAGE_REF=$image_ref IMAGE_CAPS=$image_caps IMAGE_UID=$image_uid \
	EXTRA_OBJECTS="$pki/shoal-identity-issuer.yaml $pki/shoal-trust-anchors.yaml" \
	NODE_PATH=$work/node_modules node "$work/validate.js" "$manifests" "$root/tests/k8s/fixtures"
