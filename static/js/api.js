// HTTP calls to /api/* with the session's bearer token, and the one-time token prompt.

const TOKEN_KEY = 'orderflow.token';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function getToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null; // storage disabled: the prompt comes back on every load
  }
}

function setToken(token) {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    /* ignore */
  }
}

let asking = null;

/**
 * Ask for the server's token (a modal <dialog>), keep it in sessionStorage and resolve when
 * one was entered. Concurrent callers share one prompt; a rejected token is forgotten first.
 */
export function askForToken(rejected = false) {
  if (asking) return asking;
  if (rejected) setToken(null);
  const dialog = document.getElementById('token-dialog');
  const form = dialog.querySelector('form');
  const input = dialog.querySelector('input');
  const note = dialog.querySelector('.token-note');
  note.textContent = rejected ? 'That token was not accepted. Try again.' : '';
  asking = new Promise((resolve) => {
    const onSubmit = (event) => {
      event.preventDefault();
      const value = input.value.trim();
      if (!value) return;
      setToken(value);
      input.value = '';
      form.removeEventListener('submit', onSubmit);
      dialog.close();
      asking = null;
      resolve(value);
    };
    form.addEventListener('submit', onSubmit);
    dialog.oncancel = (event) => event.preventDefault(); // Escape does not skip it
    dialog.showModal();
    input.focus();
  });
  return asking;
}

/** fetch JSON; errors become ApiError with the server's code and message. */
export async function api(path, { method = 'GET', body } = {}) {
  for (let attempt = 0; ; attempt++) {
    const headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const token = getToken();
    if (token) headers.Authorization = `Bearer ${token}`;
    let response;
    try {
      response = await fetch(path, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      throw new ApiError(0, 'network', `server unreachable (${err.message})`);
    }
    if (response.status === 401 && attempt === 0) {
      await askForToken(Boolean(token));
      continue;
    }
    const data = await response.json().catch(() => null);
    if (!response.ok) {
      throw new ApiError(response.status, data?.error?.code ?? 'http_error',
        data?.error?.message ?? `HTTP ${response.status}`);
    }
    return data;
  }
}
