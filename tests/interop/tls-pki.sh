# Sourced by the interop run scripts when PUSHI_INTEROP_TLS=1: makes a throwaway CA and a
# certificate for 127.0.0.1 signed by it in "$1", puts both pushi listeners on TLS through the
# original Pushi's variables, and tells every client to trust that CA (none is told to skip
# verification; Chromium trusts exactly this server key by its SPKI hash).
make_test_pki() {
  local dir=$1
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj "/CN=pushi interop CA" -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/CN=127.0.0.1" -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$dir/ext.cnf"
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
    -CAcreateserial -days 1 -extfile "$dir/ext.cnf" -out "$dir/server.pem" 2>/dev/null
  export APP_SSL=1 APP_SSL_KEY="$dir/server.key" APP_SSL_CER="$dir/server.pem"
  export SERVER_SSL=1 SERVER_SSL_KEY="$dir/server.key" SERVER_SSL_CER="$dir/server.pem"
  export PUSHI_TLS=1
  export NODE_EXTRA_CA_CERTS="$dir/ca.pem" SSL_CERT_FILE="$dir/ca.pem" REQUESTS_CA_BUNDLE="$dir/ca.pem"
  PUSHI_CHROMIUM_SPKI="$(openssl x509 -in "$dir/server.pem" -pubkey -noout \
    | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64)"
  export PUSHI_CHROMIUM_SPKI
  SCHEME=https WS_SCHEME=wss
  CURL_TLS=(--cacert "$dir/ca.pem")
}
SCHEME=http WS_SCHEME=ws
CURL_TLS=()
