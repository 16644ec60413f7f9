// Loads the dashboard; if a module cannot load (for example the pinned libraries were never
// installed with `npm ci`), says so on the page instead of leaving it blank.

import('./app.js')
  .then((app) => app.start())
  .catch((err) => {
    const box = document.getElementById('fatal');
    box.textContent = `The dashboard could not start: ${err.message}. `
      + 'Its libraries are installed by the set-up (make run, or npm ci).';
    box.hidden = false;
    console.error(err);
  });
