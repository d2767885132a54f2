import { render } from "preact";
import "./theme.css";

function App() {
  return <main>jobq</main>;
}

const root = document.getElementById("app");
if (root) render(<App />, root);
