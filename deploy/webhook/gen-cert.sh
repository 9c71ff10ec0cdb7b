#!/usr/bin/env bash
# Create the admission webhook's certificate: a private CA and a server certificate for
# pingress-admission.pingress.svc, stored as the Secret pingress/pingress-admission, and the CA
# put into the ValidatingWebhookConfiguration's caBundle once it exists.
# Needs openssl and kubectl. Run before or after `kubectl apply -k deploy/webhook/`; run it
# again to rotate (then restart the pingress Pods: the certificate is read at start).
set -euo pipefail
NS=${NS:-pingress}
SVC=${SVC:-pingress-admission}
DAYS=${DAYS:-825}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "$DAYS" \
  -subj "/CN=pingress-admission-ca" -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -subj "/CN=$SVC.$NS.svc" -keyout "$dir/tls.key" -out "$dir/tls.csr" 2>/dev/null
printf 'subjectAltName=DNS:%s,DNS:%s.%s,DNS:%s.%s.svc\nextendedKeyUsage=serverAuth\n' \
  "$SVC" "$SVC" "$NS" "$SVC" "$NS" > "$dir/ext"
openssl x509 -req -in "$dir/tls.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
  -days "$DAYS" -extfile "$dir/ext" -out "$dir/tls.crt" 2>/dev/null
kubectl get namespace "$NS" >/dev/null 2>&1 || kubectl create namespace "$NS"
kubectl -n "$NS" create secret tls "$SVC" --cert="$dir/tls.crt" --key="$dir/tls.key" \
  --dry-run=client -o yaml | kubectl apply -f -
ca=$(base64 < "$dir/ca.crt" | tr -d '\n')
if kubectl get validatingwebhookconfiguration "$SVC" >/dev/null 2>&1; then
  kubectl patch validatingwebhookconfiguration "$SVC" --type=json \
    -p "[{\"op\":\"add\",\"path\":\"/webhooks/0/clientConfig/caBundle\",\"value\":\"$ca\"}]"
else
  echo "ValidatingWebhookConfiguration $SVC not found yet: apply deploy/webhook/ and run this again to set its caBundle" >&2
fi
