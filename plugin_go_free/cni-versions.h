/* Generated from cnid/cni/_versions.py by `make -C plugin_go_free versions`:
 * do not edit (tests/unit/test_cni_versions.py checks it). */
#ifndef CNID_CNI_VERSIONS_H
#define CNID_CNI_VERSIONS_H

/* The newest CNI spec version: the answer's when stdin names none. */
#define CNI_LATEST_VERSION "1.1.0"
/* VERSION's supportedVersions, as a JSON array. */
#define CNI_SUPPORTED_VERSIONS_JSON "[\"0.3.0\",\"0.3.1\",\"0.4.0\",\"1.0.0\",\"1.1.0\"]"

#endif
