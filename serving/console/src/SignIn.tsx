// The sign-in screen: the operator pastes an API key once; it is checked against the API (a GET that
// needs `read`) before it is kept in sessionStorage for this tab.
import { Banner, Button, Card, Form, FormLayout, Page, Text, TextField } from "@shopify/polaris";
import { useState } from "react";
import { ApiError, clearKey, get, setKey } from "./api";

export function SignIn({ onSignedIn }: { onSignedIn: () => void }) {
  const [key, setValue] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async () => {
    if (!key.trim()) {
      setError("Paste an API key (aura keys create --scope admin --name console).");
      return;
    }
    setBusy(true);
    setError(null);
    setKey(key);
    try {
      await get("/segments", undefined, { quiet: true });
      onSignedIn();
    } catch (exc) {
      clearKey();
      setError(exc instanceof ApiError ? `${exc.status || "no answer"}: ${exc.message}` : String(exc));
    } finally {
      setBusy(false);
    }
  };

  return (
    <Page narrowWidth title="Aura console">
      <Card>
        <Form onSubmit={submit}>
          <FormLayout>
            <Text as="p">
              The console talks to this API with your API key. It is kept for this browser tab only
              (session storage) and sent as the <code>X-API-Key</code> header.
            </Text>
            {error && (
              <Banner tone="critical" title="Sign-in failed">
                <p>{error}</p>
              </Banner>
            )}
            <TextField
              label="API key"
              type="password"
              value={key}
              onChange={setValue}
              autoComplete="off"
              helpText="Create one with: aura keys create --scope admin --name console"
            />
            <Button submit variant="primary" loading={busy}>
              Sign in
            </Button>
          </FormLayout>
        </Form>
      </Card>
    </Page>
  );
}
